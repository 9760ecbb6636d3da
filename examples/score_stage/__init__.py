"""A stand-alone ScoreStage: one Lambda stage of an engagement pipeline, with its tests.

Lambda handler setting: ``score_stage.handler.handler``.
"""
