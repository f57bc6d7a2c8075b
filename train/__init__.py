"""SR Studio trainer: ``accelerate launch train/train.py --config train/configs/srresnet_x4.yaml``."""
