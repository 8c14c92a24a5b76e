/* JPEG encoding through the system's libjpeg(-turbo): packed RGB8 in, JFIF bytes out.
 * libjpeg's defaults give 4:2:0 chroma subsampling and the islow DCT, as Pillow does. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <jpeglib.h>

struct fc_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

/* Heap state, so its fields are well defined after longjmp. */
struct fc_state {
    struct jpeg_compress_struct cinfo;
    struct fc_error error;
    unsigned char *buf;
    unsigned long len;
};

static void fc_error_exit(j_common_ptr cinfo) {
    struct fc_error *err = (struct fc_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void fc_silent(j_common_ptr cinfo) { (void)cinfo; }

/* Returns 0 and sets *out (free with fc_jpeg_free) on success; -1 with a message in err. */
int fc_jpeg_encode_rgb(const unsigned char *rgb, unsigned width, unsigned height, int quality,
                       unsigned char **out, unsigned long *out_len, char *err, size_t err_len) {
    struct fc_state *st = calloc(1, sizeof(struct fc_state));
    if (st == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    st->cinfo.err = jpeg_std_error(&st->error.pub);
    st->error.pub.error_exit = fc_error_exit;
    st->error.pub.output_message = fc_silent;
    if (setjmp(st->error.jump)) {
        snprintf(err, err_len, "%s", st->error.message);
        jpeg_destroy_compress(&st->cinfo);
        free(st->buf);
        free(st);
        return -1;
    }
    jpeg_create_compress(&st->cinfo);
    jpeg_mem_dest(&st->cinfo, &st->buf, &st->len);
    st->cinfo.image_width = width;
    st->cinfo.image_height = height;
    st->cinfo.input_components = 3;
    st->cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&st->cinfo);
    jpeg_set_quality(&st->cinfo, quality, TRUE);
    st->cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&st->cinfo, TRUE);
    while (st->cinfo.next_scanline < st->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)st->cinfo.next_scanline * width * 3);
        jpeg_write_scanlines(&st->cinfo, &row, 1);
    }
    jpeg_finish_compress(&st->cinfo);
    jpeg_destroy_compress(&st->cinfo);
    *out = st->buf;
    *out_len = st->len;
    free(st);
    return 0;
}

void fc_jpeg_free(unsigned char *buf) { free(buf); }
