"""Augmented views: torchvision's crop rule from a seeded generator, drawn the same in every run."""

import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from clipbench.augment import ViewPlan, crop_box, draw_views, encode_views, view_seed


def _images(n=6, size=28):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("shape, scale", [((28, 28), (0.5, 1.0)), ((32, 24), (0.08, 1.0)), ((10, 40), (0.5, 1.0))])
def test_crop_boxes_are_torchvisions_for_the_same_random_stream(shape, scale):
    generator = torch.Generator().manual_seed(11)
    torch.manual_seed(11)
    image = torch.zeros(3, *shape)
    for _ in range(200):
        assert crop_box(*shape, scale, (3 / 4, 4 / 3), generator) == \
            tuple(RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]))


def test_views_are_a_function_of_the_seed_and_view_major():
    images = _images()
    plan = ViewPlan(views=3, seed=view_seed(1, "keys"))
    first, again = draw_views(images, plan), draw_views(images, plan)
    assert first.shape == (18, 3, 28, 28) and first.dtype == torch.uint8
    assert torch.equal(first, again)
    assert not torch.equal(first, draw_views(images, ViewPlan(views=3, seed=view_seed(1, "train"))))
    assert not torch.equal(first, draw_views(images, ViewPlan(views=3, seed=view_seed(2, "keys"))))
    assert not torch.equal(first[:6], first[6:12])  # views differ from each other
    assert all(not torch.equal(first[i], images[i]) for i in range(6))  # and from the plain image


def test_a_full_crop_without_flip_is_the_image_itself():
    images = _images()
    plan = ViewPlan(views=2, seed=5, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.equal(draw_views(images, plan), images.repeat(2, 1, 1, 1))


def test_flips_happen_about_half_the_time():
    images = _images(n=200)
    flipped = draw_views(images, ViewPlan(views=1, seed=7, scale=(1.0, 1.0), ratio=(1.0, 1.0)))
    mirrored = sum(torch.equal(f, images[i].flip(-1)) for i, f in enumerate(flipped))
    assert 70 < mirrored < 130


def test_encode_views_shapes_them_views_by_images():
    images = _images()
    plan = ViewPlan(views=4, seed=1)
    out = encode_views(lambda x: x.float().flatten(1)[:, :5], images, plan, batch_size=7)
    assert out.shape == (4, 6, 5)
    assert torch.equal(out[2, 3], draw_views(images, plan)[2 * 6 + 3].float().flatten()[:5])


def test_the_cache_key_names_every_draw_parameter_and_the_versions():
    import torchvision

    from clipbench.augment import code_version

    key = ViewPlan(views=10, seed=42).key()
    assert "views10" in key and "seed42" in key and torchvision.__version__ in key and torch.__version__ in key
    assert code_version() in key  # editing the drawing code retires every cached view
    assert key != ViewPlan(views=10, seed=42, scale=(0.08, 1.0)).key() != ViewPlan(views=10, seed=42, flip=False).key()
    assert key != ViewPlan(views=10, seed=42, scale=(0.5, 0.9999999)).key()  # exact, not rounded


@pytest.mark.parametrize("bad", [dict(views=0), dict(views=True), dict(scale=(0.5, 1.5)), dict(scale=(0.9, 0.1)),
                                 dict(ratio=(0.0, 1.0)), dict(flip=1)])
def test_a_plan_no_draw_could_honour_is_refused(bad):
    with pytest.raises(ValueError):
        ViewPlan(**{"views": 2, "seed": 1, **bad})


def test_views_are_encoded_a_batch_at_a_time_as_drawn_all_at_once():
    images = _images(n=7)
    plan = ViewPlan(views=3, seed=4)
    sizes = []

    def encode(x):
        sizes.append(len(x))
        return x.float().flatten(1)

    chunked = encode_views(encode, images, plan, batch_size=3)
    assert max(sizes) == 3
    assert torch.equal(chunked.flatten(0, 1), draw_views(images, plan).float().flatten(1))
