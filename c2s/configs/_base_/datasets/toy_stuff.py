# The toy world with its background as a seen class "background" (catalog "toy_stuff"): like COCO-Stuff,
# every pixel is annotated, so latent class mining's unannotated area holds the unseen objects only. Same
# files and toy backbone as "toy" (the backbone's key hashes data.world, not the label mapping).
_base_ = ["./toy.py"]
data = dict(dataset="toy_stuff")
# This toy CLIP also sees background views captioned "a photo of a background." (its own cache key): the
# class needs a text embedding that means something (docs/decisions.md#toy-world-labels)
toy_clip = dict(background_frac=0.1)
