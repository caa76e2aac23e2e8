_base_ = ["./_base_/default.py", "./_base_/datasets/voc12.py", "./_base_/students/segnext_b.py"]
train = dict(iters=20000)  # the paper's iterations for this dataset (Sec. 4)
