"""Loading, checking and splitting labelled data (image folders, zips, text tables, demo sets)."""
from .archives import safe_extract_zip
from .demo import demo_sets, load_demo
from .images import IMAGE_EXTENSIONS, MAX_PIXELS, check_image, image_info, load_image
from .loaders import load_dataset
from .report import DataReport, Finding, build_report
from .splits import dedupe, drop_ids, limit_per_class, make_splits, split_dataset
from .types import Dataset, Sample, Splits

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "DataReport", "Dataset", "Finding", "Sample", "Splits",
    "build_report", "check_image", "dedupe", "demo_sets", "drop_ids", "image_info", "limit_per_class",
    "load_dataset", "load_demo", "load_image", "make_splits", "safe_extract_zip", "split_dataset",
]
