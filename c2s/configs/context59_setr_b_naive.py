_base_ = ["./_base_/default.py", "./_base_/datasets/context59.py", "./_base_/students/setr_b_naive.py"]
train = dict(iters=40000)  # the paper's iterations for this dataset (Sec. 4)
