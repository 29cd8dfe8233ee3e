"""The network's own top-1 and top-5 accuracy on an image folder, through the worker's transform and network: the
baseline the ablation page's deltas start from, beside the model's published figures.

  python bench/baseline_accuracy.py --weights ../shared/models/bvlc_googlenet \
      --images ../shared/data/imagenet-sample --match eliSample__

--match keeps the files whose name contains it (the shared sample's 990 one-per-class images are
`eliSample__*`). The published figures are BVLC's model zoo README for bvlc_googlenet (single centre crop, the
ILSVRC-2012 validation set).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from worker.categories import load_imagenet_classes
from worker.extract import resolve_device
from worker.images import ImageDataset, list_image_files, make_loader
from worker.models import get_model

PUBLISHED = {"bvlc-googlenet": (0.687, 0.889)}  # BVLC model zoo, bvlc_googlenet: 68.7% top-1, 88.9% top-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--match", default="", help="keep files whose name contains this")
    parser.add_argument("--model", default="bvlc-googlenet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    device = resolve_device(args.device)
    classes = load_imagenet_classes()
    root = Path(args.images)
    files = [(i, e.path, classes[e.wnid].index) for i, e in enumerate(list_image_files(root))
             if args.match in Path(e.path).name and e.wnid in classes]
    model = get_model(args.model, weights=args.weights)
    model.net.to(device)
    labels = {i: c for i, _, c in files}
    loader = make_loader(ImageDataset(root, [(i, p) for i, p, _ in files], model.transform),
                         batch_size=args.batch_size, workers=2, pin_memory=device.type == "cuda")
    top1 = top5 = n = 0
    with torch.no_grad():
        for batch in loader:
            if batch.pixels is None:
                continue
            x = batch.pixels.to(device)
            for _, stage in model.stages:
                x = stage(x)
            truth = torch.tensor([labels[item.file_id] for item in batch.good], device=device)
            best = x.topk(5, dim=1).indices
            top1 += int((best[:, 0] == truth).sum())
            top5 += int((best == truth[:, None]).any(1).sum())
            n += len(truth)
    published = PUBLISHED.get(args.model)
    beside = f"; published (ILSVRC-2012 val, centre crop): top-1 {published[0]:.1%}, top-5 {published[1]:.1%}" \
        if published else ""
    print(f"{args.model} on {n} images of {root}{f' matching {args.match!r}' if args.match else ''}: "
          f"top-1 {top1 / n:.1%}, top-5 {top5 / n:.1%}{beside}")


if __name__ == "__main__":
    main()
