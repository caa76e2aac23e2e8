"""Everything that stands in for real inputs, in one room: the toy world.

- ``classes``: its classes and catalog entries ("toy", "toy_stuff");
- ``generate``: the generated dataset (images, masks, captions in mmseg layout);
- ``archs`` and ``clip``: the toy CLIP's architecture and its contrastive pretraining (the stand-in for
  OpenAI's weights), and the tests' tiny random CLIP;
- ``backbone``: the toy students' backbone pretraining (the stand-in for ImageNet weights);
- ``toyrun``: a checkpoint of a seeded random toy student, written without training (tests, ``c2s bench serve``);
- ``providers``: ``toy:world``, ``toy:clip``, ``toy:backbone`` for ``data.root``, ``teacher.checkpoint`` and
  ``model.pretrained``.

It registers itself with c2s through entry points (pyproject.toml, c2s/plugins.py): no production package
(data, teacher, student, method, train, sweep) imports it (tests/test_layering.py).
"""
