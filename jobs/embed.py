"""Ray job entry point for the embed stage.

    ray job submit --working-dir . -- python jobs/embed.py --config jobs/configs/embed.yaml \
        [--set KEY=VALUE ...]
"""

from aptray.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("embed"))
