"""Ray job entry point: `ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/train.yaml`."""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train"))
