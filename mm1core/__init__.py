"""mm1core: an MM1-style multimodal LLM (encoder -> connector -> decoder) and one trial's training.

Never imports Ray, MLflow or the orchestrator: a trial trains and evaluates alone.
"""

__version__ = "0.1.0"
