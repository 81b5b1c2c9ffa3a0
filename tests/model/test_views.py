import pytest
import torch

from modfuse import ContextViews
from modfuse.model.views import IMAGENET_MEAN


def object_batch(b: int = 2, size: int = 32):
    torch.manual_seed(0)
    image = torch.rand(b, 3, size, size)
    mask = torch.zeros(b, 1, size, size)
    mask[0, :, 4:20, 8:16] = 1  # a tall object
    mask[1, :, 10:14, 2:30] = 1  # a wide one
    return image, mask


@pytest.mark.parametrize("fill", ["mean", "zero"])
def test_fill_outside_object_in_fg_and_inside_in_bg(fill):
    views = ContextViews(size=24, fill=fill)
    image, mask = object_batch()
    out = views(image, mask)
    value = torch.tensor(IMAGENET_MEAN if fill == "mean" else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
    fg_mask = views.fg_mask(mask)
    outside = (fg_mask == 0).expand_as(out["fg"])
    assert outside.any()
    torch.testing.assert_close(
        out["fg"][outside], value.expand_as(out["fg"])[outside], atol=1e-6, rtol=0
    )
    # The object fills its crop: the crop is around it, not the whole image.
    assert fg_mask.mean() > 0.2
    plain = ContextViews(size=None, fill=fill, hide="mask")(image, mask)["bg"]
    inside = mask.bool().expand_as(plain)
    torch.testing.assert_close(plain[inside], value.expand_as(plain)[inside], atol=1e-6, rtol=0)
    assert torch.equal(plain[~inside], image[~inside])


def test_box_mode_keeps_the_box_and_hides_it_from_bg():
    views = ContextViews(size=None, fg_mode="box", margin=0.0)
    image, mask = object_batch()
    out = views(image, mask)
    # The wide object's box is 4 x 28: the square crop holds the box's pixels unmasked.
    assert out["fg"].shape == (2, 3, 32, 32)
    box = views.region(mask)
    # The hidden area is the square around the object: 16 x 16 for the 16 x 8 object.
    assert torch.equal(box[0, 0, 4:20, 4:20], torch.ones(16, 16)) and box[0].sum() == 256
    assert (out["bg"][box.expand_as(image).bool()] != image[box.expand_as(image).bool()]).any()


def test_default_bg_hides_the_square_box_not_the_silhouette():
    views = ContextViews(size=None, margin=0.0)
    image, mask = object_batch()
    bg = views(image, mask)["bg"]
    fill = views.fill_value(image)
    hidden = (bg == fill).all(dim=1)  # (B, H, W)
    # The tall 16 x 8 object hides a 16 x 16 square: nothing tells its shape.
    assert hidden[0].sum() == 256 and hidden[0, 4:20, 4:20].all()


def test_views_are_differentiable_in_the_image():
    image, mask = object_batch()
    image.requires_grad_(True)
    out = ContextViews(size=16, hide="mask")(image, mask)
    g_fg = torch.autograd.grad(out["fg"].sum(), image, retain_graph=True)[0]
    g_bg = torch.autograd.grad(out["bg"].sum(), image)[0]
    obj = mask.bool().expand_as(image)
    assert g_fg[obj].abs().sum() > 0 and g_fg[~obj].abs().sum() == 0
    assert g_bg[~obj].abs().sum() > 0 and g_bg[obj].abs().sum() == 0


def test_empty_mask_gives_the_whole_image():
    views = ContextViews(size=None, fg_mode="box")
    image = torch.rand(1, 3, 16, 16)
    out = views(image, torch.zeros(1, 1, 16, 16))
    torch.testing.assert_close(out["fg"], image, atol=1e-5, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fg_mode must be"):
        ContextViews(fg_mode="circle")
    with pytest.raises(ValueError, match=r"expected image \(B, C, H, W\) and mask \(B, 1, H, W\)"):
        ContextViews()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="differ in batch or size"):
        ContextViews()(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 9, 9))


def test_boxes_are_float32_and_exact_for_a_512px_bfloat16_batch():
    # bfloat16 holds 8 bits of mantissa: 401 would round to 400 and 459 to 460.
    mask = torch.zeros(3, 1, 512, 512)
    mask[0, :, 301:359, 401:459] = 1  # odd coordinates above 256
    mask[1, :, 3:9, 500:511] = 1
    views = ContextViews(size=64, margin=0.0)
    want = views.boxes(mask)
    got = views.boxes(mask.bfloat16())
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    assert want[0].tolist() == [0.0, 401.0, 301.0, 459.0, 359.0]
    assert want[2].tolist() == [2.0, 0.0, 0.0, 512.0, 512.0]  # empty mask: the whole image
    torch.manual_seed(0)
    image = torch.rand(3, 3, 512, 512)
    full = views(image, mask)
    half = views(image.bfloat16(), mask.bfloat16())
    assert half["fg"].dtype == torch.bfloat16 and half["bg"].dtype == torch.bfloat16
    for k in ("fg", "bg"):  # the same crop, up to bfloat16's rounding of the pixels
        torch.testing.assert_close(half[k].float(), full[k], atol=2e-2, rtol=0)
    hidden = views.region(mask.bfloat16())
    assert torch.equal(hidden.float(), views.region(mask))
    assert hidden[0, 0, 301:359, 401:459].all() and not hidden[0, 0, 300, 400]
