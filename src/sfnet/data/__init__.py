"""Data in: catalogs, image stores, the synthetic survey, the downloader, the loader."""
