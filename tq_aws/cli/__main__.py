"""``python -m tq_aws.cli``: the ``tq-aws`` command."""

import sys

from tq_aws.cli.root import main

if __name__ == "__main__":  # importing the module (pkgutil walks, docs) runs nothing
    sys.exit(main())
