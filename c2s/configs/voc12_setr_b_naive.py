_base_ = ["./_base_/default.py", "./_base_/datasets/voc12.py", "./_base_/students/setr_b_naive.py"]
train = dict(iters=20000)  # the paper's iterations for this dataset (Sec. 4)
