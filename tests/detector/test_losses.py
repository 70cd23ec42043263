import torch

from cldet.detector.losses import box_iou, feature_kd, merge_targets, pseudo_labels, score_kd


def _pred(boxes_xywh, scores):
    """(1, 4 + nc, A) decoded prediction from lists."""
    b = torch.tensor(boxes_xywh, dtype=torch.float32).T
    s = torch.tensor(scores, dtype=torch.float32).T
    return torch.cat([b, s], 0)[None]


def test_pseudo_labels_threshold_and_nms():
    pred = _pred([[20, 20, 10, 10], [21, 20, 10, 10], [60, 60, 10, 10], [80, 80, 10, 10]],
                 [[0.9, 0.1], [0.8, 0.1], [0.2, 0.7], [0.3, 0.2]])
    (boxes, cls, score), = pseudo_labels(pred, conf=0.5, nms_iou=0.6)
    assert cls.tolist() == [0, 1] and torch.allclose(score, torch.tensor([0.9, 0.7]))
    assert torch.allclose(boxes[0], torch.tensor([15.0, 15, 25, 25]))


def test_merge_never_overrides_real_labels_and_groups_by_image():
    batch = {"cls": torch.tensor([[2.0]]), "bboxes": torch.tensor([[0.25, 0.25, 0.1, 0.1]]), "batch_idx": torch.tensor([1.0])}
    # image 1: one pseudo box on the real box (dropped) and one elsewhere (kept); image 0: one pseudo box
    pseudo = [
        (torch.tensor([[10.0, 10, 20, 20]]), torch.tensor([0]), torch.tensor([0.9])),
        (torch.tensor([[20.0, 20, 30, 30], [60, 60, 80, 80]]), torch.tensor([1, 0]), torch.tensor([0.9, 0.8])),
    ]
    merged, n = merge_targets(batch, pseudo, (100, 100), gt_iou=0.5)
    assert n == 2
    assert merged["batch_idx"].tolist() == [0, 1, 1]  # sorted by image, as the loss expects
    assert merged["cls"].view(-1).tolist() == [0, 2, 0]  # the real label (class 2) survives
    assert torch.allclose(merged["bboxes"][2], torch.tensor([0.7, 0.7, 0.2, 0.2]))


def test_merge_without_pseudo_returns_batch_unchanged():
    batch = {"cls": torch.zeros(0, 1), "bboxes": torch.zeros(0, 4), "batch_idx": torch.zeros(0)}
    merged, n = merge_targets(batch, [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0))], (10, 10))
    assert n == 0 and merged is batch


def test_feature_kd_zero_when_equal_scale_free_and_grad():
    t = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    assert feature_kd([x.clone() for x in t], t).item() == 0
    s = [x + 0.1 * torch.randn_like(x) for x in t]
    a = feature_kd(s, t)
    b = feature_kd([10 * x for x in s], [10 * x for x in t])
    assert a > 0 and torch.isclose(a, b)
    s0 = t[0].clone().requires_grad_(True)
    feature_kd([s0 + 1, t[1]], t).backward()
    assert s0.grad.abs().sum() > 0
    assert feature_kd(s, t, mode="channel") > 0


def test_score_kd_zero_at_teacher_and_pulls_toward_it():
    t = torch.randn(2, 3, 50)
    assert abs(score_kd(t.clone(), t).item()) < 1e-5
    s = torch.zeros(2, 3, 50, requires_grad=True)
    loss = score_kd(s, t)
    loss.backward()
    assert loss > 0
    # gradient descent moves student logits toward the teacher's
    assert torch.sign(-s.grad).eq(torch.sign(t)).float().mean() > 0.95


def test_box_iou():
    a = torch.tensor([[0.0, 0, 10, 10]])
    assert torch.allclose(box_iou(a, torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])),
                          torch.tensor([[1.0, 1 / 3, 0]]), atol=1e-6)


def test_feature_kd_weights_free_unweighted_positions():
    from cldet.detector.losses import level_maps, teacher_confidence

    t = [torch.ones(1, 4, 2, 2)]
    s = [t[0].clone()]
    s[0][..., 1, 1] += 3.0  # the student moves only at one position
    w_there = [torch.zeros(1, 1, 2, 2)]
    w_there[0][..., 1, 1] = 1.0
    w_elsewhere = [1.0 - w_there[0]]
    assert feature_kd(s, t, weights=w_elsewhere).item() == 0.0  # change where the teacher sees nothing: free
    assert feature_kd(s, t, weights=w_there).item() > feature_kd(s, t).item() > 0  # held where it sees old objects
    # the per-anchor confidence is split into levels in the head's anchor order
    logits = torch.tensor([[[-9.0] * 4 + [9.0], [-9.0] * 4 + [-9.0]]])  # (B=1, nc_old=2, A=5): 4 anchors of a 2x2 map + 1 of 1x1
    maps = level_maps(teacher_confidence(logits), [torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 1, 1)])
    assert [tuple(m.shape) for m in maps] == [(1, 1, 2, 2), (1, 1, 1, 1)]
    assert maps[0].max() < 1e-3 and maps[1].item() > 0.99


def test_soft_target_correction_equals_bce_with_lifted_targets():
    import torch.nn.functional as F

    from cldet.detector.losses import soft_target_correction

    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, requires_grad=True)  # student logits (B, A, nc_old)
    y = (torch.rand(2, 7, 3) > 0.8).float() * torch.rand(2, 7, 3)  # assigned targets, mostly background
    t = torch.randn(2, 3, 7)  # teacher logits (B, nc_old, A)
    norm = torch.tensor(4.0)
    lifted = torch.maximum(y, t.sigmoid().transpose(1, 2))
    want = (F.binary_cross_entropy_with_logits(x, lifted, reduction="sum") - F.binary_cross_entropy_with_logits(x, y, reduction="sum")) / norm
    got = soft_target_correction(x, y, t, norm)
    assert torch.allclose(got, want, atol=1e-5)
    got.backward()
    assert (x.grad <= 0).all() and x.grad.abs().sum() > 0  # only ever pushes old-class scores up toward the teacher


def test_box_kd_zero_at_teacher_weighted_by_confidence():
    from cldet.detector.losses import box_kd

    torch.manual_seed(0)
    t = torch.randn(1, 4 * 16, 3)
    assert box_kd(t.clone(), t, torch.ones(1, 3), 16).item() < 1e-6
    s = t.clone()
    s[..., 2] += torch.randn(64)  # the student's box differs at anchor 2 only
    assert box_kd(s, t, torch.tensor([[1.0, 1.0, 0.0]]), 16).item() < 1e-6  # ... where the teacher sees nothing
    assert box_kd(s, t, torch.tensor([[0.0, 0.0, 1.0]]), 16).item() > 0.01


def test_teacher_is_not_listened_to_on_labeled_new_objects():
    from cldet.detector.losses import new_object_anchors, soft_target_correction

    ts = torch.zeros(1, 3, 3)  # (B, A, nc): 2 old classes + 1 new
    ts[0, 1, 2] = 0.8  # anchor 1 holds a labeled new object
    keep = ~new_object_anchors(ts, nc_old=2)
    assert keep.tolist() == [[True, False, True]]
    teacher = torch.full((1, 2, 3), 2.0)  # the teacher calls every anchor an old object
    student = torch.full((1, 2, 3), -2.0, requires_grad=True)
    score_kd(student, teacher, keep).backward()
    assert student.grad[0, :, 1].abs().sum() == 0 and student.grad[0, :, 0].abs().sum() > 0
    x = torch.zeros(1, 3, 2, requires_grad=True)
    soft_target_correction(x, ts[..., :2], teacher, torch.tensor(1.0), keep).backward()
    assert x.grad[0, 1].abs().sum() == 0 and x.grad[0, 0].abs().sum() > 0


def test_split_targets_by_class_group():
    from cldet.detector.losses import split_targets

    batch = {"cls": torch.tensor([[0.0], [3.0], [1.0], [2.0]]), "bboxes": torch.arange(16.0).view(4, 4),
             "batch_idx": torch.tensor([0.0, 0.0, 1.0, 1.0]), "img": torch.zeros(2, 3, 8, 8)}
    old, new = split_targets(batch, nc_old=2)
    assert old["cls"].view(-1).tolist() == [0, 1] and old["batch_idx"].tolist() == [0, 1]
    assert new["cls"].view(-1).tolist() == [3, 2] and new["batch_idx"].tolist() == [0, 1]
    assert torch.equal(new["bboxes"], batch["bboxes"][[1, 3]]) and old["img"] is batch["img"]
    assert batch["cls"].shape == (4, 1)  # the batch itself is untouched


def test_split_task_loss_trains_only_its_channels_over_its_own_target_sum():
    """Each half of the split task loss leaves the other group's class outputs alone, and the new classes' half is
    not scaled down by the old-class targets beside them. On the shipped demo base (a trained model: the assigner's
    target scores are substantial there), with its own detections on a bundled photo as labels, classes 0-2 playing
    the old group and 3-5 the new one."""
    from types import SimpleNamespace

    from cldet.core.assets import CHESS_MINI, DEMO_BASE
    from cldet.core.data import load_dataset
    from cldet.core.processing import letterbox, load_image
    from cldet.detector.distill import IncrementalLoss
    from cldet.detector.losses import split_targets
    from cldet.detector.model import load_checkpoint

    model, meta = load_checkpoint(DEMO_BASE / "model.pt")
    size = meta["imgsz"]
    model.eval()
    for path in load_dataset(CHESS_MINI).images("val"):  # a photo with pieces of both groups
        img = torch.from_numpy(letterbox(load_image(path), size)[0])[None].float()
        with torch.no_grad():
            (boxes, cls, _), = pseudo_labels(model(img)[0], conf=0.5)
        if (cls < 3).sum() >= 2 and (cls >= 3).sum() >= 2:
            break
    assert (cls < 3).sum() >= 2 and (cls >= 3).sum() >= 2, cls
    xywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                        boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1) / size
    batch = {"cls": cls.view(-1, 1).float(), "bboxes": xywh, "batch_idx": torch.zeros(len(cls)), "img": img}
    model.train()
    model.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    preds = model(img)
    scores = preds["scores"]
    old_b, new_b = split_targets(batch, nc_old=3)
    old_crit, new_crit = IncrementalLoss(model, channels=slice(0, 3)), IncrementalLoss(model, channels=slice(3, None))
    loss_new, split_items = new_crit(preds, new_b)
    (g,) = torch.autograd.grad(loss_new.sum(), scores, retain_graph=True)
    assert g[:, :3].abs().sum() == 0 and g[:, 3:].abs().sum() > 0  # old-class outputs untouched by the new half
    loss_old, _ = old_crit(preds, old_b)
    (g,) = torch.autograd.grad(loss_old.sum(), scores, retain_graph=True)
    assert g[:, 3:].abs().sum() == 0 and g[:, :3].abs().sum() > 0
    # unsplit, the old targets join the normaliser and scale the new classes' loss down; split, they do not
    _, joint_items = IncrementalLoss(model, channels=slice(3, None))(preds, batch)
    assert joint_items["cls_loss"] < 0.8 * split_items["cls_loss"]
