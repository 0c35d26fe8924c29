"""Lightning tasks (TorchGeo ``BaseTask`` subclasses), one module per task family."""
