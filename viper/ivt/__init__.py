"""IVT (iterative visual thinking): a VLM predicts a box for a referring expression, sees it drawn on the
image and refines it. `boxes` holds the box arithmetic every IVT stage shares (parse, frames, IoU, drawing)."""
