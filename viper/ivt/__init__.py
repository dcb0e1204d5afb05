"""IVT (iterative visual thinking): a VLM predicts a box for a referring expression, sees it drawn on the
image and refines it. The second method of the project (ivt/dvc.yaml; README "IVT").

    boxes   parsing, the model's frame, IoU, Acc@tau, the overlay      world   the tiny grounding scenes
    data    split tables and the paper-scale TSV reader                loop    step 0 + T refinements, cached
    traces  SFT data from the base model's own errors + teacher checks grpo    multi-step GRPO
    score   scores per step choice                                     report  the md/html report
    run     what the stages share (which VLM, trajectories on disk)
"""
