"""The parts of the training loop (trainer.py): what a run has done so far (state.py), and the components
that each do one job around the loop's steps and epochs (component.py names the hooks they answer)."""
