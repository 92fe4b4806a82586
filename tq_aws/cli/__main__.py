"""``python -m tq_aws.cli``: the ``tq-aws`` command."""

import sys

from tq_aws.cli.root import main

sys.exit(main())
