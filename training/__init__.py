"""Training-time code: the engine and the app never import it (tests/test_layering.py).

data (data sets, the crop cache, P x K sampler, augmentation, teacher targets), loss, train (the
training loop), recipes (configs/*.json), metrics (pair metrics, the threshold search), evaluate
(the LFW protocol, the model card), thresholds (the card's verdict band and identification
threshold, fitted on the validation people), openset (the one-shot identification protocol),
teacher (dlib's encoder, its own venv). It may import the engine; never the other way round.
"""
