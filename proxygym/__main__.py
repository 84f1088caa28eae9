import sys

from proxygym.cli import main

sys.exit(main())
