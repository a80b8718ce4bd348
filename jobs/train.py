"""Ray job entry point for the train stage.

    ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/train.yaml \
        [--set KEY=VALUE ...]
"""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train"))
