"""What serves the Gradio Space (``app.py`` at the repository root): upload handling and per-request folders
(:mod:`.handlers`), threads, tiling and status text (:mod:`.utils`), and publishing the Space and the model to
the Hub (:mod:`.publish`). Importing this package does not import gradio; :mod:`.handlers` does."""
