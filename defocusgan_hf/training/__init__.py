"""What the two training scripts in ``train/`` share, like ``diffusers.training_utils``: flags (:mod:`.args`), the
Accelerator (:mod:`.accelerator`), checkpoints and the run log (:mod:`.checkpoints`), EMA (:mod:`.ema`),
step-indexed data (:mod:`.sampling`), validation samples (:mod:`.validation`), the learning-rate schedule
(:mod:`.schedule`), the losses (:mod:`.losses`), ``--recipe`` files (:mod:`.recipes`) and model cards
(:mod:`.model_card`). Nothing outside training imports it, except evaluation's reblur loss."""
