"""smartbin training: transfer learning on class-folder photo datasets (TrashNet layout).

Usage:
    python -m training.fit --data ../shared/data/trashnet --split-file ../shared/data/trashnet-split.json \
        --weights ../shared/weights/efficientnet_lite0_imagenet --out runs/lite0
"""
