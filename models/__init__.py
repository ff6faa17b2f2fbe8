"""TensorFlow Recommenders models: two-tower retrieval, ranking, evaluation and baselines.

TFRS runs on Keras 2 (tf-keras): the switch must be set before TensorFlow is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
