"""Ray job entry point for the experiment stage.

    ray job submit --working-dir . -- python jobs/experiment.py --config jobs/configs/experiment.yaml \
        [--set KEY=VALUE ...]
"""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("experiment"))
