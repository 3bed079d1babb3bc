//! MATLAB v5 `.mat` reader (compressed and uncompressed) for MM-Fi CSI frames.
