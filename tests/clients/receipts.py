"""Receipt photos for the duplicate tests, drawn with Pillow.

Usage: receipts.py OUTDIR

Writes one shop's receipt (`base.jpg`), the same photo re-encoded (`q60.jpg`), halved
(`half.jpg`), stored turned with an EXIF orientation that turns it back (`exif6.jpg`) and as a
PNG (`base.png`); receipts of the same shop and layout with other amounts (`other0.jpg` ...
`other4.jpg`: one price and the total differ); and another shop's receipt (`shop2.jpg`).
"""

import io
import os
import random
import sys

from PIL import Image, ImageDraw, ImageFilter, ImageFont


def receipt(items, shop="CORNER MARKET", seed=1, width=900):
    rnd = random.Random(seed)
    font = ImageFont.load_default(size=38)
    small = ImageFont.load_default(size=32)
    height = 400 + 60 * len(items) + 300
    img = Image.new("L", (width, height), 246)
    d = ImageDraw.Draw(img)
    d.text((width // 2, 60), shop, font=font, fill=20, anchor="mm")
    d.text((width // 2, 120), "12 HIGH STREET  TEL 555-0100", font=small, fill=30, anchor="mm")
    d.text((60, 190), "DATE 2026-11-%02d  TIME 12:%02d" % (rnd.randint(1, 28), rnd.randint(0, 59)),
           font=small, fill=30)
    y = 280
    for name, cents in items:
        d.text((60, y), name, font=small, fill=25)
        d.text((width - 60, y), "%d.%02d" % (cents // 100, cents % 100), font=small, fill=25,
               anchor="ra")
        y += 60
    total = sum(c for _, c in items)
    d.line((60, y + 15, width - 60, y + 15), fill=40, width=3)
    d.text((60, y + 45), "TOTAL", font=font, fill=10)
    d.text((width - 60, y + 45), "%d.%02d" % (total // 100, total % 100), font=font, fill=10,
           anchor="ra")
    d.text((width // 2, y + 165), "THANK YOU", font=small, fill=30, anchor="mm")
    return img.filter(ImageFilter.GaussianBlur(0.7)).convert("RGB")


def save(img, path, **options):
    img.save(path, **options)


def main(out):
    os.makedirs(out, exist_ok=True)
    items = [("ITEM %02d" % i, 100 + 37 * i) for i in range(8)]
    base = receipt(items)
    save(base, os.path.join(out, "base.jpg"), quality=90)
    save(base, os.path.join(out, "q60.jpg"), quality=60)
    half = base.resize((base.width // 2, base.height // 2), Image.LANCZOS)
    save(half, os.path.join(out, "half.jpg"), quality=85)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter to the left; viewers turn it back
    save(base.rotate(90, expand=True), os.path.join(out, "exif6.jpg"), quality=90,
         exif=exif.tobytes())
    save(base, os.path.join(out, "base.png"))
    for k in range(5):
        changed = list(items)
        i = (3 * k + 1) % len(items)
        changed[i] = (changed[i][0], changed[i][1] + 100 * (k + 1) + 3)
        save(receipt(changed), os.path.join(out, "other%d.jpg" % k), quality=90)
    save(receipt(items, shop="HARBOUR CAFE", seed=7), os.path.join(out, "shop2.jpg"), quality=90)


if __name__ == "__main__":
    main(sys.argv[1])
