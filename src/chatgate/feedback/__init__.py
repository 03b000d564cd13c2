"""Feedback on assistant answers: thumbs up/down and corrected answers, per message and
user, the training opt-in, and the per-model rates administrators read."""
