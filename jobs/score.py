"""Ray job entry point for the score stage.

    ray job submit --working-dir . -- python jobs/score.py --config jobs/configs/score.yaml \
        [--set KEY=VALUE ...]
"""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("score"))
