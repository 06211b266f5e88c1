"""Data in: catalogs, image stores, the synthetic survey, the downloader, the dataset and its batches."""
