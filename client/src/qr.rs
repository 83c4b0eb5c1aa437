//! Terminal QR codes, drawn with Unicode half blocks (two modules a
//! character), dark on light so phones read them on dark terminals too.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// Renders `data` as a QR code, or `None` if it does not fit one.
pub(crate) fn render(data: &[u8]) -> Option<String> {
    let code = QrCode::new(data).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}
