"""Reading a series' files for the loader: each file's header (`slice_header`,
`multiframe`) and its pixels (`source.read_source`; `decode`'s backend table, `codecs`)."""
