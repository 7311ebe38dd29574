"""``python -m defocusgan_hf.cli {deblur,defocus-map} ...`` (also ``accelerate launch -m defocusgan_hf.cli``)."""

import sys

from . import main

sys.exit(main())
