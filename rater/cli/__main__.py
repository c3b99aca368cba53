import sys

from rater.cli import main

sys.exit(main())
