# The toy world with its background as a seen class "background" (catalog "toy_stuff"): like COCO-Stuff,
# every pixel is annotated, so latent class mining's unannotated area holds the unseen objects only. Same
# files, toy CLIP and toy backbone as "toy" (their cache keys hash data.world, not the label mapping).
_base_ = ["./toy.py"]
data = dict(dataset="toy_stuff")
