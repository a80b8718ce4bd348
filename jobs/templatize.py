"""Ray job entry point for the templatize stage.

    ray job submit --working-dir . -- python jobs/templatize.py --config jobs/configs/templatize.yaml \
        [--set KEY=VALUE ...]
"""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("templatize"))
