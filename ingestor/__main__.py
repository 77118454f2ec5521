import sys

from ingestor.cli import collector

collector.pause()  # before the imports (collector.py says why)

from ingestor.cli.main import main  # noqa: E402

try:
    code = main()
finally:
    collector.skip_final()
sys.exit(code)
