"""The export walk and the header index: `scan.scan_export` reads every file's header once
(`header_fast`, pydicom as the fallback in `header`), records it (`record`, `index`),
follows a DICOMDIR (`dicomdir`) and groups the instances into studies (`grouping`)."""
