"""Document scanning: machine-readable zones, AAMVA barcodes, invoices and receipts, business cards."""
