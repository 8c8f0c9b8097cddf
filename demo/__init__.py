"""The Twin web demo: Gradio UI (ui.py), its logic (service.py) and presentation (render.py)."""
