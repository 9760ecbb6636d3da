"""The engagement pipeline: ETLStage -> FilterStage -> ScoreStage -> StoreStage -> ReactiveStage.

Customer sessions arrive on an SQS queue; an EventBridge Pipe starts an execution per batch.
``workflow.py`` is the EXPRESS workflow (five Lambda stages); ``workflow_standard.py`` is the
STANDARD variant whose ScoreStage is a Glue job (``glue_score.py``). Run it locally with::

    ceap-stage run examples/engagement/workflow.py --store file://.ceap
"""
