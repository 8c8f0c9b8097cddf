"""Training-time tools that the engine and the app never import (the dlib teacher lives here)."""
