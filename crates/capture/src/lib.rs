//! CSI capture-file readers (Intel 5300, Nexmon, ESP32, Atheros): the first stage of the data flow.
