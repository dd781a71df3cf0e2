"""Backups in a directory or an rclone remote: names, listing, retention,
verification, storage, metrics; the commands behind encpipe-list, -prune,
-verify, -check and the storage steps of encpipe-backup and encpipe-restore."""
