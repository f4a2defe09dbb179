"""Stage 6, the pictures: contact sheets and the HTML gallery, drawn from the manifest alone.
Entry points: `pictures.sheet.build_sheets`, `pictures.gallery.build_gallery`.
"""
