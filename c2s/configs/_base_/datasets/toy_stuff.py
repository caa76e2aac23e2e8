# The toy world with its background as a seen class "background" (catalog "toy_stuff"): like COCO-Stuff,
# every pixel is annotated, so latent class mining's unannotated area holds the unseen objects only. Same
# files and toy backbone as "toy" (the backbone's key hashes data.world, not the label mapping).
_base_ = ["./toy.py"]
data = dict(dataset="toy_stuff")
# The class needs a text embedding that means something: this toy CLIP also sees background views captioned
# "a photo of a background." (its own cache key). Measured with the "toy" CLIP, whose captions never name the
# background (tools/offline_c2s.py, seed 0, 300 steps, 1-epoch cache): 95% of background pixels were read as
# the unseen "blue square" (background IoU 3.8, blue square 1.0) by C2S and the baseline alike.
toy_clip = dict(background_frac=0.1)
