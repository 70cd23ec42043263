"""Import this before Ultralytics: it must never touch the network (cldet runs offline).

Ultralytics probes connectivity when first imported (`ONLINE = is_online()`), then may send usage
events, fetch fonts for plots, or pip-install missing packages. YOLO_OFFLINE=1 makes the probe answer
"offline" without opening a socket, which switches all of that off. This is the one deliberate
import-time action in cldet; it only sets a default, so a user's explicit value still wins.
"""

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
