# Student = mmseg backbone + decode head + 1x1 projection to the CLIP embedding dim (c2s/student/zoo.py).
model = dict(
    name="segformer_b4",  # a name from c2s.student.zoo.VARIANTS
    embed_dim=512,  # must equal the teacher's embedding dim
    pretrained=None,  # local backbone weights (torch.load(weights_only=True)); null = random init
)
