"""Training for vizcap: `python -m train shapes` reproduces the shipped ShapeScenes checkpoint."""
