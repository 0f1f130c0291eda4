"""Reading and writing things that cross the package's boundary, one module per direction.

* :mod:`.arviz`: runs out to ArviZ (InferenceData / DataTree, NetCDF, Zarr) and back;
* :mod:`.torch_export`: models trained elsewhere in, as ``torch.export`` programs, without unpickling.
"""
