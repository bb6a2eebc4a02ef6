"""Model loading for the SimplyPNG node pack: BiRefNet (segmenter) and big-LaMa (inpainter).

Node code imports `registry` lazily; nothing in this package loads torch or a model at import
time. Files come only from models.lock's pinned entries under ComfyUI's models folder.
"""
